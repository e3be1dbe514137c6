from keras_linreg_cli import main

raise SystemExit(main())
