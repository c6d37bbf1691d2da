"""Development tooling: local emulators and the development host. Never deployed."""
