/*
 * install.h - `install DISK` (cmd_install.c): CubeOS onto a disk.
 *
 * The admin command runs `cubeos --install DISK` as a child of the shell
 * (shell_run), so PID1's event loop keeps running while the disk is written.
 */
#ifndef CUBEOS_INSTALL_H
#define CUBEOS_INSTALL_H

struct shell;

#define INSTALL_ESP_MIB		   128 /* partition 1, as image/mkimage.sh makes it */
#define INSTALL_MIN_DATA_MIB	   1024
#define INSTALL_PXE_SOURCE	   "/cubeos/esp.img" /* image/mkpxe.sh puts it there */
#define INSTALL_TEMPLATES_PARTNAME "cubeos-templates"
#define INSTALL_TEMPLATES_MAX_MIB  (64 * 1024) /* a sanity bound on the templates image */

/* The admin command: starts the child. */
void cmd_install(struct shell *sh, int argc, char **argv);

/* The child (`cubeos --install DISK`): checks, prints what it erases, writes
 * the disk, prints progress. Returns the process exit status (0 on success). */
int install_main(const char *disk);

#endif
