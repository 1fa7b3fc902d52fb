from devkit.chaos import main

raise SystemExit(main())
