"""genbatch provider plugin for Acme Video: `adapter.PLUGIN` (entry point
`genbatch.providers`), `simulator.SIMULATOR` (entry point `genbatch.simulators`)."""
