"""Clusters: the engines this installation manages (the server's own and every stored Cluster),
routed per project, their health, and the node operations admins run on them."""
