"""What tests reach into: fault injection. Production code only marks the places faults strike."""
