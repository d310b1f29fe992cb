"""What the live and leader rooms both call: HTTP and Kubernetes clients, paging, errors."""
