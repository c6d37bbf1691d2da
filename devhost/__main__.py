import sys

from devhost.start import main

sys.exit(main())
