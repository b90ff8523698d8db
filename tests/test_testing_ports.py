"""embedpipe.testing.services: its Ray nodes get ports Ray accepts: a worker-port range that holds none of the
node's other ports (an overlap makes `ray start` exit at once, failing a test by chance)."""

from embedpipe.testing.services import WORKER_PORTS, ray_ports


def test_the_worker_port_range_holds_none_of_the_component_ports():
    for _ in range(200):
        ports, low = ray_ports(7)
        assert len(set(ports)) == 7 and low + WORKER_PORTS <= 65536
        assert not any(low <= port < low + WORKER_PORTS for port in ports)
