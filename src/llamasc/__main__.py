from llamasc.cli import main

main()
