"""Ports for the DIMSE tests: this suite's range (11200-11299), the first free one."""

from tests.ports import PortRange

#: the DIMSE tests' ports (listeners of Lightbox and of the peers the tests start)
PORTS = range(11200, 11300)
#: a port of :data:`PORTS` nothing listens on now (one in TIME_WAIT counts as free)
free_port = PortRange(PORTS, reuse_address=True)
