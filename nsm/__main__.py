import sys

from nsm.cli import main

sys.exit(main())
