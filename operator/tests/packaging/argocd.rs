//! The Argo CD health scripts, run by a real Lua 5.1 (the language level of gopher-lua, which
//! Argo CD embeds) against healthy, progressing, degraded and stale objects of every kind.
