"""Import of Compose Spec files (docker-compose.yml) as Dockyard App manifests."""
