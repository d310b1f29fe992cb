"""The chaos harness: spacegate as a cluster runs it (three replicas behind a load balancer,
the leader's work live, real registries) under steady load while faults are injected.

- :mod:`.replicas`: ``spacegate serve`` processes as the pods of a Deployment, and their
  Secret-like certificate directory;
- :mod:`.haproxy`: Debian's HAProxy in front of them, as a Service would be;
- :mod:`.fault_proxy`: a TCP proxy in front of each registry that delays, fails or refuses;
- :mod:`.world`: everything above set up on a control plane, and the verdict the world
  expects for an image in a namespace at a given moment;
- :mod:`.load`: a fixed rate of Pod and Deployment creates, each one counted;
- :mod:`.faults`: the faults, each alone or mixed at random with a fixed seed;
- :mod:`.convergence`: provisioning and audit as the world says, no orphan robot, no
  foreign Secret touched;
- :mod:`.probe`: what the apiserver itself does when a webhook resets vs times out.

``bench/chaos.py`` drives them and prints the table.
"""
