"""greenroom: the command line and the pieces that tie the packages into a product."""
