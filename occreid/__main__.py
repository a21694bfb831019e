from occreid.cli import main

main()
