import sys

from compressbench.measure.child import main

sys.exit(main())
