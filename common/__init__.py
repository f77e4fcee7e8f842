"""Every broker concern, once: settings, logging, connecting, topology, publishing, consuming."""
