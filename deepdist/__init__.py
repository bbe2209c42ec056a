"""deepdist: distributed asynchronous SGD over Spark, with a sharded ZeroMQ parameter server."""
from .client import Client
from .driver import DeepDist
from .errors import DeepDistError, RequestError, ShardDied, ShardTimeout
from .server import ParameterServer

__all__ = ["Client", "DeepDist", "DeepDistError", "ParameterServer", "RequestError", "ShardDied", "ShardTimeout"]
__version__ = "0.1.0"
