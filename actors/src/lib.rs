//! Switchboard's actor system, free of HTTP: the credit, rate-limit and presence actors and
//! their messages. The realtime gateway (WebSocket sessions) talks to these actors; they never
//! see an HTTP or WebSocket type.
