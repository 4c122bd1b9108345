from fastmask.cli import main

main()
