"""Security checks shared by the compiler and the runtime."""
