"""Entry point of an evaluation worker process: python -m synthrl.envs._worker FD ENV VERSION."""

import sys
from multiprocessing.connection import Connection

from synthrl.envs.evaluate import _worker_main

if __name__ == "__main__":
    _worker_main(Connection(int(sys.argv[1])), sys.argv[2], sys.argv[3])
