from drainwatch.cli import main

main()
