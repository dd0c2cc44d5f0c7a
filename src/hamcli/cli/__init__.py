"""The command-line skin over the hamcli library: parse options, call one function, render."""
