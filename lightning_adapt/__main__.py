from lightning_adapt.cli import main

main()
