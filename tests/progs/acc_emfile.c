// From the issue-14 semantics review (tests/blocking.rs).
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/resource.h>
#include <netinet/in.h>
int main(){
  setvbuf(stdout,NULL,_IOLBF,0); alarm(5);
  int l=socket(AF_INET,SOCK_STREAM,0);
  struct sockaddr_in a={.sin_family=AF_INET,.sin_addr.s_addr=htonl(0x7f000001)};
  bind(l,(void*)&a,sizeof a); listen(l,16); socklen_t al=sizeof a; getsockname(l,(void*)&a,&al);
  int c=socket(AF_INET,SOCK_STREAM,0); connect(c,(void*)&a,sizeof a);
  usleep(10000);
  struct rlimit rl; getrlimit(RLIMIT_NOFILE,&rl);
  int top=dup(0); close(top);
  struct rlimit nr={top,rl.rlim_max}; setrlimit(RLIMIT_NOFILE,&nr);
  printf("limit %d\n",top);
  int s=accept(l,0,0);
  printf("accept at EMFILE: %d %s\n",s,s<0?strerrorname_np(errno):"");
  setrlimit(RLIMIT_NOFILE,&rl);
  // is the client's connection still waiting in the backlog, or closed?
  char b=1; write(c,&b,1);
  fcntl(l,F_SETFL,O_NONBLOCK); s=accept4(l,0,0,SOCK_NONBLOCK);
  printf("accept after: %d %s\n",s,s<0?strerrorname_np(errno):"");
  struct pollfd p={c,POLLIN,0}; poll(&p,1,100);
  printf("client sees: revents=%x (%s)\n",p.revents,(p.revents&(POLLIN|POLLHUP))?"EOF/RST":"nothing");
  return 0;
}
