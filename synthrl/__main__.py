import sys

from synthrl.cli import main

sys.exit(main())
