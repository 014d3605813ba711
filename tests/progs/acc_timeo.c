// From the issue-14 semantics review (tests/blocking.rs).
// accept() with SO_RCVTIMEO 1s, SA_RESTART handler; SIGUSR1 at 300ms. Prints result and elapsed.
// also: send with SO_SNDTIMEO on a full socket (mode send)
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <signal.h>
#include <unistd.h>
#include <time.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <sys/time.h>
#include <netinet/in.h>
static void h(int s){(void)s;}
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec/1e9;}
int main(int argc,char**argv){
  int sendmode = argc>1 && !strcmp(argv[1],"send");
  int restart = !(argc>2 && !strcmp(argv[2],"norestart"));
  struct sigaction sa={0}; sa.sa_handler=h; sa.sa_flags=restart?SA_RESTART:0; sigaction(SIGALRM,&sa,0);
  int l=socket(AF_INET,SOCK_STREAM,0);
  struct sockaddr_in a={.sin_family=AF_INET,.sin_addr.s_addr=htonl(0x7f000001)};
  bind(l,(void*)&a,sizeof a); listen(l,16); socklen_t al=sizeof a; getsockname(l,(void*)&a,&al);
  struct timeval tv={1,0};
  struct itimerval it={{0,0},{0,300000}};
  double t0; long r;
  if(!sendmode){
    setsockopt(l,SOL_SOCKET,SO_RCVTIMEO,&tv,sizeof tv);
    setitimer(ITIMER_REAL,&it,0); t0=now();
    r=accept(l,0,0);
  } else {
    int s=socket(AF_INET,SOCK_STREAM,0); connect(s,(void*)&a,sizeof a);
    int p=accept(l,0,0); (void)p;
    setsockopt(s,SOL_SOCKET,SO_SNDTIMEO,&tv,sizeof tv);
    // fill the send buffer first (nonblocking)
    char *big=calloc(1,1<<20);
    for(;;){ struct iovec v={big,1<<20}; struct msghdr m={0}; m.msg_iov=&v;m.msg_iovlen=1; if(sendmsg(s,&m,MSG_DONTWAIT)<0)break; }
    setitimer(ITIMER_REAL,&it,0); t0=now();
    struct iovec v={big,1<<20}; struct msghdr m={0}; m.msg_iov=&v;m.msg_iovlen=1;
    r=sendmsg(s,&m,0);
  }
  int e=errno;
  printf("%s: r=%ld errno=%s after %.2fs\n", sendmode?"sendmsg":"accept", r, r<0?strerrorname_np(e):"-", now()-t0);
  return 0;
}
