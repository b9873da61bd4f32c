import sys

from voiceop.cli import main

sys.exit(main())
