import sys

from nntrain.cli.app import main

sys.exit(main())
