from fastpose.cli import main

main()
