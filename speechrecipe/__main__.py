import os
import sys

# `python -m speechrecipe` puts the working folder first on sys.path; move it last, so a file there
# named like a dependency (tqdm.py, yaml.py) cannot shadow the installed package
if sys.path and sys.path[0] in ("", os.getcwd()):
    sys.path.append(sys.path.pop(0))

from speechrecipe.cli import main  # noqa: E402

main()
