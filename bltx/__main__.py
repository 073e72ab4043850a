import sys

from bltx.run import main

sys.exit(main())
