"""Loading the models a stage serves: hub, local, tiny or random weights, and which engine serves them."""
