/* cube.c - main() of `cube` and of its alias `cubemastercli` (a symlink: the
 * name in argv[0] only changes what the usage text calls the program). The
 * CLI itself is api/cli*.c. */
#include <stdio.h>

#include "../cli.h"

int main(int argc, char **argv)
{
	return cli_main(argc, argv, stdout, stderr);
}
