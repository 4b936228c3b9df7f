"""What every service of the sandbox shares: the HTTP request/response model and router
(`httpcore`), TLS material (`tls`), the injectable clock, time formats (`timefmt`), request
counters, the fault switches as a value (`fault_config`), latency, injected failures and the
services' limits (`faults`), and page sizes (`paging`)."""
