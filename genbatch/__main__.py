from genbatch.cli import main

main()
