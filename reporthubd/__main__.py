from reporthubd.cli import main

raise SystemExit(main())
