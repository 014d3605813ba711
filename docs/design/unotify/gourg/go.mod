module gourg
go 1.21
