from speechrecipe.cli import main

main()
