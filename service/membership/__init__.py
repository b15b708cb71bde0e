"""The membership core: the catalogue, the one service that recomputes a membership, and the
read-side queries over members. Below billing, newsletter and the pages; above the pure rules."""
