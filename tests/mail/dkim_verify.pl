#!/usr/bin/perl
# Verifies the DKIM signature of the message on stdin with Mail::DKIM (Debian's
# libmail-dkim-perl), looking the key up at the DNS server on 127.0.0.1, port $ARGV[0].
# Prints the result ("pass", "fail (...)", "none"...) and its signing domain.
use strict;
use warnings;
use Mail::DKIM::Verifier;
use Net::DNS::Resolver;

my $resolver = Net::DNS::Resolver->new(
    nameservers => ['127.0.0.1'], port => $ARGV[0], udppacketsize => 4096, retry => 1,
);
Mail::DKIM::DNS::resolver($resolver);
my $verifier = Mail::DKIM::Verifier->new();
binmode STDIN;
while (<STDIN>) {
    s/\015?\012$/\015\012/;
    $verifier->PRINT($_);
}
$verifier->CLOSE;
my $domain = $verifier->signature ? $verifier->signature->domain : '';
print $verifier->result_detail, " ", $domain, "\n";
