import sys

from .demo._cli import main

sys.exit(main())
