"""What every service of the sandbox shares: the HTTP request/response model and router
(`httpcore`), TLS material (`tls`), the injectable clock, time formats (`timefmt`), request
counters, fault switches and service limits (`faults`), and page sizes (`paging`)."""
