import sys

from toolforge.cli import main

sys.exit(main())
