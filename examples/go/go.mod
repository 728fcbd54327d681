module example.com/aptnetcon

go 1.19
