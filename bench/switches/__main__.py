import sys

from bench.switches.run import main

sys.exit(main())
