"""``python -m propagate`` runs the command-line tool."""

import sys

try:
    from .cli import main
except KeyboardInterrupt:  # Ctrl-C while the libraries load: the same one line as later
    sys.stderr.write("propagate: interrupted\n")
    raise SystemExit(130) from None

if __name__ == "__main__":
    main()
