"""`eval.py sweep -m MODEL --mode "qflash(p_bits=4..14)"`: one knob of an arithmetic swept on the same images."""
