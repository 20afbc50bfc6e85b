import sys

from nntrain.cli import main

sys.exit(main())
