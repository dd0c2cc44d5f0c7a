from hamcli.cli.app import main

main()
