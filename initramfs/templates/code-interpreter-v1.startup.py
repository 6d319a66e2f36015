# Run by every python kernel of a code-interpreter-v1 sandbox before its first
# cell (agent/interp/kernel.py, start-up files). The template's snapshot is
# taken after it ran, so each sandbox starts with these modules loaded and its
# first runCode does not spend seconds importing them. Nothing lands in the
# user's globals: `import pandas as pd` in a cell is what binds `pd`.
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot  # noqa: E402,F401
import numpy  # noqa: E402,F401
import pandas  # noqa: E402,F401
