from chatterm.cli import main

main()
