"""What the Traffic Dam services share: settings, key names, Lua scripts, wire formats."""
